"""The colour themes of the bundles, as CSS custom properties.

One palette per theme; ``css_variables`` writes them for light, dark, ``auto``
(``prefers-color-scheme``) and print (always light). Text colours pass WCAG AA
(4.5:1) on the background and on the heatmap cells that carry text; series
colours pass 3:1 (graphics) — ``tests/test_render_theme.py`` checks the ratios.
"""

from __future__ import annotations

THEMES = ("light", "dark", "auto")

LIGHT = {
    "bg": "#ffffff", "panel": "#ffffff", "fg": "#1f2328", "muted": "#57606a", "border": "#d0d7de",
    "grid": "#d8dee4", "axis": "#8c959f", "focus": "#0969da",
    "s1": "#0969da", "s2": "#bc4c00", "s3": "#1a7f37", "s4": "#8250df", "s5": "#bf3989", "s6": "#6e7781",
    "up": "#1a7f37", "down": "#cf222e", "drop": "#afb8c1",
    "h0": "#f6f8fa", "h1": "#dbeafe", "h2": "#b6d4fe", "h3": "#79b0f6", "h4": "#2563eb", "h5": "#1a4aa8",
    "h6": "#0a2e6e",
    "t0": "#57606a", "t1": "#1f2328", "t2": "#1f2328", "t3": "#1f2328", "t4": "#ffffff", "t5": "#ffffff",
    "t6": "#ffffff",
    "tipbg": "#1f2328", "tipfg": "#ffffff",
}

DARK = {
    "bg": "#0d1117", "panel": "#161b22", "fg": "#e6edf3", "muted": "#9198a1", "border": "#30363d",
    "grid": "#262c36", "axis": "#6e7681", "focus": "#4493f8",
    "s1": "#4493f8", "s2": "#f0883e", "s3": "#3fb950", "s4": "#a371f7", "s5": "#db61a2", "s6": "#9198a1",
    "up": "#3fb950", "down": "#f85149", "drop": "#484f58",
    "h0": "#1c2128", "h1": "#102a4c", "h2": "#0f3d7a", "h3": "#1158c7", "h4": "#388bfd", "h5": "#79c0ff",
    "h6": "#cae8ff",
    "t0": "#9198a1", "t1": "#e6edf3", "t2": "#e6edf3", "t3": "#ffffff", "t4": "#0d1117", "t5": "#0d1117",
    "t6": "#0d1117",
    "tipbg": "#e6edf3", "tipfg": "#0d1117",
}

PALETTES = {"light": LIGHT, "dark": DARK}

#: (foreground key, background key, minimum contrast) pairs the themes must satisfy.
CONTRAST_PAIRS = (
    [("fg", "bg", 4.5), ("fg", "panel", 4.5), ("muted", "bg", 4.5), ("muted", "panel", 4.5),
     ("up", "panel", 4.5), ("down", "panel", 4.5), ("tipfg", "tipbg", 4.5), ("focus", "panel", 3.0)]
    + [(f"s{i}", "panel", 3.0) for i in range(1, 7)]
    + [(f"t{i}", f"h{i}", 4.5) for i in range(0, 7)]
)


def _block(p: dict[str, str]) -> str:
    return "".join(f"--{k}:{v};" for k, v in p.items())


def css_variables() -> str:
    """The variable blocks for every theme (the page picks one with ``data-theme``)."""
    return (
        f":root,[data-theme=light]{{{_block(LIGHT)}color-scheme:light}}"
        f"[data-theme=dark]{{{_block(DARK)}color-scheme:dark}}"
        f"@media (prefers-color-scheme:dark){{[data-theme=auto]{{{_block(DARK)}color-scheme:dark}}}}"
        f"@media print{{:root,[data-theme]{{{_block(LIGHT)}color-scheme:light}}}}"
    )


def relative_luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    chans = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in chans]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
