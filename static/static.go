// Package static embeds the portal's CSS, JavaScript and the vendored
// htmx and Bootstrap files, so nothing loads from a CDN.
package static

import "embed"

// FS holds app.css, app.js, favicon.svg and vendor/.
//
//go:embed app.css app.js favicon.svg vendor
var FS embed.FS
