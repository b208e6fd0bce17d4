// Package web holds the templ components of the dashboard: layouts, pages
// and partials.
//
// It is a leaf: components take view-model structs defined here, never
// store rows, and contain no logic beyond presentation.
package web
