"""`atlas ui`: a local web page to browse and edit the memory and to read run folders.

Starlette and Jinja templates, no JavaScript (so no build step): every page is plain HTML forms
and links, every pamphlet text is escaped."""
