"""The image providers this service can draw with: their names, in one place.

A model's `provider` (catalog/spec.py) is one of these; the configuration turns providers on
(`Config.image_providers`), the router sends each request to its model's provider
(backends/providers.py), and /v1/models, /readyz and /metrics name them.
"""

from __future__ import annotations

WORKERS_AI = "workers-ai"            # Cloudflare Workers AI's own `@cf/` models, billed in neurons
CF_PARTNER = "cloudflare-partner"    # Cloudflare's partner models (`/ai/run`), billed in dollars
OPENAI = "openai"                    # any OpenAI-compatible Images API (IMAGE_API_BASE)
FAL = "fal"                          # fal.ai (FAL_KEY), billed in dollars
REPLICATE = "replicate"              # Replicate (REPLICATE_API_TOKEN), billed in dollars
COMFYUI = "comfyui"                  # the operator's own ComfyUI (COMFYUI_URL), no bill by default
DEMO = "demo"                        # offline placeholder pictures, the embedded default

# IMAGE_BACKEND's values and the provider each stands for (the README's mapping).
LEGACY_BACKENDS = {"cloudflare": WORKERS_AI, "openai": OPENAI, "demo": DEMO}
