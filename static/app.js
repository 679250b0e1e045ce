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
      text.textContent = pct + "% sent";
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
