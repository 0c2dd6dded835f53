"""The admin console's dashboard: queries, queue depths, SVG charts and the views (edge layer)."""
