"""Report pages: a slim, offline HTML export with a strict Content-Security-Policy.

Every page funnelkit writes (the reports and the index) is one
self-contained file that works offline:

* :data:`TEMPLATE` is our nbconvert template.  It extends nbconvert's ``lab``
  template for the cell layout but replaces its ``<head>``: no require.js,
  MathJax or mermaid from a CDN, no widget or JavaScript outputs, a short
  style sheet of our own (:data:`REPORT_CSS`) and a
  ``<meta http-equiv="Content-Security-Policy">`` (:data:`CSP`) that allows
  no script at all, images only as ``data:`` URIs and inline styles.  It is
  a Python string, so an installed package has it without package data.
* :func:`scrub_html` is the last step of every export: a parser-based pass
  that drops what no report needs and a browser could run or fetch
  (``<script>``, ``<iframe>``/``<object>``/``<embed>``/``<base>``, ``on*``
  attributes, ``javascript:`` and external URLs).  Data-derived text is
  escaped where it is written (see :mod:`funnelkit.reports.sections`); this
  pass is the second line of defence, the CSP the third.

Examples
--------
>>> scrub_html('<p onclick="x()">hi<script>alert(1)</script></p>')
'<p>hi</p>'
>>> scrub_html('<a href="javascript:alert(1)">a</a> <a href="product/A.html">b</a>')
'<a>a</a> <a href="product/A.html">b</a>'
>>> scrub_html('<source srcset="data:image/png;base64,AA 1x, https://e.x/a.png 2x"><source srcset="data:image/png;base64,AA">')
'<source><source srcset="data:image/png;base64,AA">'
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = ["CSP", "REPORT_CSS", "TEMPLATE", "csp_meta", "scrub_html"]

#: The Content-Security-Policy of every page: no scripts, no fetches; images
#: as data URIs, inline styles (pandas tables carry their own ``<style>``).
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
       "form-action 'none'")


def csp_meta() -> str:
    """The ``<meta>`` element that carries :data:`CSP` (first in ``<head>``).

    Examples
    --------
    >>> csp_meta()[:60]
    '<meta http-equiv="Content-Security-Policy" content="default-'
    >>> "default-src &#x27;none&#x27;;" in csp_meta(), "script-src" in csp_meta()
    (True, False)
    """
    return f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP, quote=True)}">'


#: The style sheet of a report page (the lab template's own is 300 kB).
REPORT_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: #1f2328; font-size: 15px; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.2rem 3rem; }
h1 { font-size: 1.7rem; line-height: 1.25; margin: .3rem 0 .8rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .5rem; padding-bottom: .3rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .4rem; }
p { margin: .5rem 0; }
a { color: #0969da; }
a.anchor-link { display: none; }
.jp-Cell { margin: 0; }
.jp-OutputArea-output { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; font-variant-numeric: tabular-nums; }
th, td { padding: .32rem .6rem; border-bottom: 1px solid #e4e7eb; text-align: right; vertical-align: top; }
thead th, th.col_heading { background: #f3f5f7; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0 .4rem; }
table.funnelkit-facts th, table.funnelkit-facts td { text-align: left; border-bottom: 1px solid #eef0f2; }
table.funnelkit-facts th { background: none; white-space: nowrap; padding-right: 1.2rem; }
img { max-width: 100%; height: auto; }
figure { margin: 1rem 0; }
figcaption { color: #57606a; font-size: .85rem; }
code { font-size: .85em; word-break: break-all; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: .6rem .8rem;
  border-radius: 4px; font-size: .8rem; }
[data-mime-type="application/vnd.jupyter.stderr"] pre { background: #fff1f0; border-left: 4px solid #cf222e; }
.funnelkit-note { color: #57606a; }
.funnelkit-warning { background: #fff8c5; border: 1px solid #e6c65c; border-left: 4px solid #bf8700;
  border-radius: 4px; padding: .5rem .8rem; margin: .6rem 0; color: #3b2e00; }
.funnelkit-warning strong { color: #7d4e00; }
footer { margin-top: 2.5rem; font-size: .85rem; color: #57606a; }
.fk-nav { display: flex; flex-wrap: wrap; gap: .3rem 1rem; align-items: baseline; font-size: .88rem;
  padding: .2rem 0 .55rem; border-bottom: 1px solid #d0d7de; }
.fk-nav a { text-decoration: none; } .fk-nav a:hover { text-decoration: underline; }
.fk-home { font-weight: 600; }
.fk-sibs a, .fk-sibs strong { margin-right: .55rem; white-space: nowrap; }
.fk-nav-label { color: #57606a; }
.fk-months { margin-left: auto; white-space: nowrap; } .fk-months a { margin-left: .7rem; }
.fk-meta { display: flex; flex-wrap: wrap; gap: .15rem 1.2rem; color: #57606a; font-size: .85rem; margin: .1rem 0 .7rem; }
.fk-meta b { font-weight: 600; color: #1f2328; margin-right: .25rem; }
.fk-lead { background: #fff1f0; border-left: 4px solid #cf222e; border-radius: 4px; padding: .5rem .8rem;
  margin: .5rem 0; font-size: 1.02rem; }
.fk-lead-weak { background: #f6f8fa; border-left-color: #8c959f; }
.fk-lead-label { display: block; font-size: .74rem; text-transform: uppercase; letter-spacing: .04em; color: #57606a;
  font-weight: 600; }
.fk-cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(185px, 1fr)); gap: .7rem; margin: .8rem 0 1rem; }
.fk-card { border: 1px solid #d0d7de; border-radius: 8px; padding: .55rem .75rem .45rem; display: flex;
  flex-direction: column; gap: .1rem; min-width: 0; }
.fk-card-label { font-size: .76rem; color: #57606a; text-transform: uppercase; letter-spacing: .03em; font-weight: 600; }
.fk-card-value { font-size: 1.5rem; font-weight: 650; line-height: 1.2; font-variant-numeric: tabular-nums;
  overflow-wrap: anywhere; }
.fk-card-detail { font-size: .8rem; color: #57606a; }
.fk-card-change { font-size: .85rem; font-variant-numeric: tabular-nums; }
.fk-card-change.up { color: #1a7f37; } .fk-card-change.down { color: #cf222e; }
.fk-card-small .fk-card-change { color: #57606a; }
.fk-card-flag { font-size: .75rem; color: #57606a; font-style: italic; }
.fk-card-flag.fk-small { color: #9a6700; font-style: normal; font-weight: 600; }
.fk-spark { width: 100%; height: 40px; margin-top: auto; padding-top: .3rem; display: block; overflow: visible; }
details { margin: .6rem 0; } details summary { cursor: pointer; color: #0969da; }
.fk-scroll { overflow-x: auto; max-width: 100%; }
.fk-table td, .fk-table th { text-align: left; } .fk-table td.num, .fk-table th.num { text-align: right; }
.fk-table td.num { white-space: nowrap; }
.fk-table tr.fk-total td { font-weight: 600; border-top: 1px solid #8c959f; }
.fk-figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 440px), 1fr)); gap: .3rem 1.2rem; }
.fk-sentences li { margin: .25rem 0; }
dl.fk-facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .15rem 1rem; margin: .4rem 0; }
dl.fk-facts dt { font-weight: 600; } dl.fk-facts dd { margin: 0; overflow-wrap: anywhere; }
.ansi-red-fg { color: #cf222e; } .ansi-green-fg { color: #1a7f37; } .ansi-yellow-fg { color: #9a6700; }
.ansi-blue-fg { color: #0969da; } .ansi-cyan-fg { color: #1b7c83; } .ansi-bold { font-weight: bold; }
@media (max-width: 640px) {
  body { font-size: 14px; }
  main { padding: 1rem .7rem 2rem; }
  h1 { font-size: 1.35rem; } h2 { font-size: 1.15rem; }
  th, td { padding: .25rem .4rem; }
  table { font-size: .82rem; }
  .fk-cards { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: .5rem; }
  .fk-card { padding: .45rem .55rem .4rem; }
  .fk-card-value { font-size: 1.2rem; }
  .fk-months { margin-left: 0; } .fk-months a { margin-left: 0; margin-right: .7rem; }
  dl.fk-facts { grid-template-columns: minmax(0, 1fr); } dl.fk-facts dd { margin-bottom: .35rem; }
}
@media print { main { max-width: none; } .jp-OutputArea-output { overflow: visible; } }
"""

#: nbconvert template of a report page (extends ``lab`` for the cells only).
TEMPLATE = r"""
{%- extends 'lab/index.html.j2' -%}

{%- block header -%}
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{{ resources.funnelkit_csp_meta }}
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ nb.metadata.get('title', resources['metadata']['name']) | escape_html }}</title>
<style>{{ resources.funnelkit_css }}</style>
</head>
{%- endblock header -%}

{%- block body_header -%}
<body class="funnelkit-report">
<main>
{%- endblock body_header -%}

{% block body_footer %}
</main>
</body>
{% endblock body_footer %}

{%- block footer -%}
</html>
{%- endblock footer -%}

{#- outputs that would need a script, or a network fetch, are left out -#}
{%- block data_javascript scoped -%}{%- endblock data_javascript -%}
{%- block data_widget_view scoped -%}{%- endblock data_widget_view -%}
{%- block data_pdf scoped -%}{%- endblock data_pdf -%}

{%- block data_mermaid scoped -%}
<div class="jp-RenderedText jp-OutputArea-output"><pre>{{ output.data['text/vnd.mermaid'] | escape_html }}</pre></div>
{%- endblock data_mermaid -%}
"""


# ---------------------------------------------------------------------------
# the scrubber
# ---------------------------------------------------------------------------
#: Elements dropped with their content.
_DROP = frozenset({
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "link", "noscript",
    "template", "portal", "form", "button", "input", "select", "textarea", "animate", "set",
    "animatemotion", "animatetransform", "handler", "listener", "foreignobject",
})
#: Elements that never have an end tag.
_VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr", "base"})
_URL_ATTRS = frozenset({"href", "src", "xlink:href", "action", "formaction", "background", "poster", "data",
                        "cite", "longdesc", "usemap", "ping", "srcset", "lowsrc", "dynsrc", "manifest",
                        "codebase", "archive", "profile", "icon"})
_CTRL = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):")
_CSS_URL = re.compile(r"url\s*\(\s*['\"]?\s*(?!data:image/)", re.I)
_CSS_BAD = re.compile(r"expression\s*\(|@import|behavior\s*:|-moz-binding", re.I)
_CSS_IMPORT = re.compile(r"@import[^;]*;?", re.I)
_CSS_FETCH = re.compile(r"url\s*\(\s*['\"]?\s*(?!data:)[^)]*\)", re.I)


def _safe_url(name: str, value: str) -> bool:
    """True for relative links and in-page anchors (href) and ``data:image`` sources; False otherwise."""
    url = _CTRL.sub("", html.unescape(value)).lower()
    if not url:
        return True
    if url.startswith("//") or url.startswith("\\\\") or url.startswith("/\\"):
        return False
    if name == "src":  # images are embedded: nothing is fetched, not even a local file
        return url.startswith("data:image/")
    if name == "srcset":  # one embedded image (a <picture>'s phone variant): no space, so no second candidate
        raw = html.unescape(value)
        return url.startswith("data:image/") and not re.search(r"[\x00-\x20\x7f]", raw)
    return name == "href" and _SCHEME.match(url) is None  # a relative link (to a report) or a fragment


def _meta_ok(attrs: dict[str, str | None]) -> bool:
    if "charset" in attrs:
        return True
    if (attrs.get("name") or "").lower() in {"viewport", "referrer", "color-scheme"}:
        return True
    return (attrs.get("http-equiv") or "").lower() == "content-security-policy"


class _Scrubber(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []  # open dropped elements (their content is dropped too)
        self.raw = 0  # inside <style>: text is CSS, written as it is

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> str:
        parts = []
        for name, value in attrs:
            name = name.lower()
            if name.startswith("on") or (name in {"srcdoc", "formaction", "action", "http-equiv"} and tag != "meta"):
                continue
            if name in _URL_ATTRS and value is not None and not _safe_url(name, value):
                continue
            if name == "style" and value and (_CSS_URL.search(value) or _CSS_BAD.search(value)):
                continue
            if value is None:
                parts.append(f" {name}")
            else:
                parts.append(f' {name}="{html.escape(value, quote=True)}"')
        return "".join(parts)

    def handle_starttag(self, tag, attrs):
        if self.skip:
            if tag == self.skip[-1] and tag not in _VOID:
                self.skip.append(tag)
            return
        if tag in _DROP:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag == "meta" and not _meta_ok({k.lower(): v for k, v in attrs}):
            return
        if tag == "style":
            self.raw += 1
        self.out.append(f"<{tag}{self._attrs(tag, attrs)}>")

    def handle_startendtag(self, tag, attrs):
        if self.skip or tag in _DROP:
            return
        if tag == "meta" and not _meta_ok({k.lower(): v for k, v in attrs}):
            return
        self.out.append(f"<{tag}{self._attrs(tag, attrs)}>")

    def handle_endtag(self, tag):
        if self.skip:
            if tag == self.skip[-1]:
                self.skip.pop()
            return
        if tag in _DROP or tag in _VOID:
            return
        if tag == "style" and self.raw:
            self.raw -= 1
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if self.skip:
            return
        if self.raw:  # CSS: nothing fetched (no @import, url() only to data:)
            self.out.append(_CSS_BAD.sub("", _CSS_FETCH.sub("none", _CSS_IMPORT.sub("", data))))
        else:
            self.out.append(html.escape(data, quote=False))

    def handle_decl(self, decl):
        if decl.lower().startswith("doctype"):
            self.out.append(f"<!{decl}>")

    # comments, processing instructions and unknown declarations are dropped
    def handle_comment(self, data):
        pass

    def handle_pi(self, data):
        pass

    def unknown_decl(self, data):
        pass


def scrub_html(text: str) -> str:
    """Drop anything a browser could run or fetch from an HTML page or fragment.

    Removes ``<script>``, ``<iframe>``, ``<object>``, ``<embed>``, ``<base>``,
    ``<link>``, forms, SVG animation elements and comments; ``on*``
    attributes; links other than relative ones and in-page anchors, and
    image sources (``src``, a ``srcset`` of one image) other than
    ``data:image`` URIs (so no ``javascript:``, no ``http(s)://`` and no
    local file is fetched);
    ``<meta>`` other than charset, viewport, referrer and the CSP.  Text is
    re-escaped, so what was text stays text.

    Parameters
    ----------
    text : str
        An HTML page or fragment.

    Returns
    -------
    str
        The same page without those parts.

    Examples
    --------
    >>> scrub_html('<img src=x onerror=alert(1)><img src="https://cdn.example/x.png">')
    '<img><img>'
    >>> scrub_html("<p>&lt;script&gt; stays text</p>")
    '<p>&lt;script&gt; stays text</p>'
    """
    parser = _Scrubber()
    parser.feed(text)
    parser.close()
    return "".join(parser.out)
