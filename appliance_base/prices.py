"""Model prices for spend estimates: `model_prices` ("PREFIX=input,output,cache_read,cache_write;
..." in USD per million tokens), parsed once here so the configuration check and the spend
arithmetic read it the same way."""

from __future__ import annotations

from .errors import ConfigError

FORMAT_HINT = 'write e.g. "claude-opus=15,75,1.5,18.75; *=3,15,0.3,3.75" (USD per million tokens)'


def parse_prices(text: str) -> dict[str, tuple[float, float, float, float]]:
    """{model prefix: (input, output, cache_read, cache_write)}; "*" prices every other model."""
    prices: dict[str, tuple[float, float, float, float]] = {}
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        prefix, sep, figures = item.partition("=")
        try:
            values = tuple(float(f) for f in figures.split(","))
        except ValueError:
            values = ()
        if not sep or not prefix.strip() or len(values) != 4 or any(not 0 <= v < 1e6 for v in values):
            raise ConfigError(f"model_prices: cannot read {item!r}", hint=FORMAT_HINT)
        prices[prefix.strip()] = values  # type: ignore[assignment]
    return prices


def price_of(prices: dict[str, tuple[float, float, float, float]], model: str) -> tuple[float, float, float, float]:
    """The prices of `model`: its longest matching prefix, else "*", else nothing (0)."""
    best = max((p for p in prices if p != "*" and model.startswith(p)), key=len, default=None)
    return prices[best] if best is not None else prices.get("*", (0.0, 0.0, 0.0, 0.0))
