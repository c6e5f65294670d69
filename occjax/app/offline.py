"""The page works offline and tells no one: analytics off, no CDN, system fonts, local only.

gradio's analytics and version check are off (`GRADIO_ANALYTICS_ENABLED=False`, and
`analytics_enabled=False` on the Blocks); its default themes name web fonts, so the theme uses the
system's fonts; no server-side rendering (a Node process), PWA, MCP server, monitoring or
browser-side run history; the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os

ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_SSR_MODE": "False",
    "GRADIO_RUN_HISTORY": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

SANS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO = ["ui-monospace", "Menlo", "Consolas", "DejaVu Sans Mono", "monospace"]

CSS = """
.occ-title h1 { margin-bottom: 0.1em; }
.occ-step h3 { margin: 0.2em 0; }
#run-msg, #photo-msg, #mask-msg { min-height: 1.6em; }
"""


def set_environment() -> None:
    """Before gradio is imported: analytics, telemetry and hub access off."""
    for k, v in ENV.items():
        os.environ.setdefault(k, v)


def theme():
    """gradio's default theme with system fonts (nothing to download)."""
    import gradio as gr

    def fonts(names):
        return [n if n in ("sans-serif", "monospace") else gr.themes.Font(n) for n in names]

    return gr.themes.Default(primary_hue="indigo", font=fonts(SANS), font_mono=fonts(MONO))


def launch_options(port: int) -> dict:
    """`Blocks.launch` keywords: local only, nothing fetched from or sent to elsewhere."""
    from occjax.app.config import HOST

    return {
        "server_name": HOST,
        "server_port": port,
        "share": False,
        "inbrowser": False,
        "ssr_mode": False,
        "pwa": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "run_history": False,
        "footer_links": ["settings"],
        "max_file_size": "50mb",
        "theme": theme(),
        "css": CSS,
    }
