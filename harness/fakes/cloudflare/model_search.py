"""Cloudflare's model discovery routes: `models/search` (paged) and `models/schema`.

Listing the Workers AI models of schemas.py and the partner models of partner_schemas.py, as
image-providers.md section 1 (Discovery) describes them: items with `name`, `description`,
`task.name` and `properties`, paged by `per_page`/`page` with `result_info.total_pages`.
"""

from __future__ import annotations

import math
import uuid

from flask import Response, request

from harness.fakes.cloudflare.partner_schemas import PARTNER_MODELS
from harness.fakes.cloudflare.schemas import MODELS
from harness.fakes.cloudflare.state import _json, cf_error

TEXT_TO_IMAGE = "Text-to-Image"


def catalog() -> list[dict]:
    """Every text-to-image model the account offers: Workers AI's and the partners'."""
    items = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "name": name,
              "description": f"Workers AI text-to-image model {name.rsplit('/', 1)[-1]}",
              "task": {"name": TEXT_TO_IMAGE}, "properties": []} for name in MODELS]
    items += [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "name": name,
               "description": description, "task": {"name": TEXT_TO_IMAGE},
               "properties": [{"property_id": "partner", "value": "true"},
                              {"property_id": "billing", "value": "unified"}]}
              for name, (description, _) in PARTNER_MODELS.items()]
    return items


def search() -> Response:
    try:
        per_page = int(request.args.get("per_page", 20))
        page = int(request.args.get("page", 1))
    except ValueError:
        return cf_error(400, 7001, "per_page and page must be integers")
    if not (1 <= per_page <= 100 and page >= 1):
        return cf_error(400, 7001, "per_page must be 1-100 and page at least 1")
    task = request.args.get("task")
    items = [item for item in catalog()
             if task is None or item["task"]["name"].lower() == task.lower()]
    pages = max(1, math.ceil(len(items) / per_page))
    shown = items[(page - 1) * per_page:page * per_page]
    return _json({"result": shown, "success": True, "errors": [], "messages": [],
                  "result_info": {"page": page, "per_page": per_page, "count": len(shown),
                                  "total_count": len(items), "total_pages": pages}})


def schema_of() -> Response:
    model = request.args.get("model")
    if not model:
        return cf_error(400, 7001, "the query parameter 'model' is required")
    if model in PARTNER_MODELS:
        props = PARTNER_MODELS[model][1]
    elif model in MODELS:
        props = {name: {"type": "string" if p.type == "binary" else
                        "array" if p.type == "uint8[]" else p.type}
                 for name, p in MODELS[model].props.items()}
    else:
        return cf_error(404, 3042, "The model name is invalid")
    return _json({"result": {"input": {"type": "object", "properties": props,
                                       "required": ["prompt"],
                                       "additionalProperties": False},
                             "output": {"type": "object", "properties": {
                                 "image": {"type": "string",
                                           "description": "a link to the picture"}}}},
                  "success": True, "errors": [], "messages": []})
