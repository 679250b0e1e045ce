// Package views embeds the portal's html templates: layouts, pages, and one
// partial per region that HTMX swaps.
package views

import "embed"

// FS holds layouts/, pages/ and partials/.
//
//go:embed layouts pages partials
var FS embed.FS
