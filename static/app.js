// customstream portal: the little JavaScript the pages need. No inline
// scripts: everything hangs off data attributes and htmx events.
(function () {
  "use strict";

  // htmx leaves 4xx answers unswapped by default; our 400/413/507 answers
  // carry the error messages to show.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var status = evt.detail.xhr.status;
    if (status >= 400 && status < 600) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  // bytes formats a size as the server does (internal/units): 12 B, 1.5 GiB.
  function bytes(n) {
    if (n < 1024) {
      return n + " B";
    }
    var units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    var i = -1;
    do {
      n /= 1024;
      i++;
    } while (n >= 1024 && i < units.length - 1);
    return n.toFixed(1) + " " + units[i];
  }

  // Upload progress while the browser sends the files.
  document.addEventListener("htmx:xhr:progress", function (evt) {
    var bar = document.getElementById("upload-progress");
    var text = document.getElementById("upload-progress-text");
    if (!bar || !evt.detail.lengthComputable) {
      return;
    }
    var pct = Math.floor((evt.detail.loaded / evt.detail.total) * 100);
    bar.classList.remove("d-none");
    bar.value = pct;
    if (text) {
      text.textContent = pct + "% sent · " + bytes(evt.detail.loaded) + " of " + bytes(evt.detail.total);
    }
  });

  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (evt.detail.elt && evt.detail.elt.id === "upload-form") {
      document.querySelectorAll("#upload-form .invalid-feedback").forEach(function (el) {
        el.textContent = "";
      });
    }
  });

  // Copy buttons: data-copy names the element whose text or value to copy.
  document.addEventListener("click", function (evt) {
    var btn = evt.target.closest("[data-copy]");
    if (!btn) {
      return;
    }
    var src = document.querySelector(btn.getAttribute("data-copy"));
    if (!src || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(src.value !== undefined ? src.value : src.textContent).then(function () {
      var label = btn.textContent;
      btn.textContent = "Copied";
      setTimeout(function () { btn.textContent = label; }, 1500);
    });
  });
})();
