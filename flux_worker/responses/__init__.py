"""The Responses API's logic (no Flask): every request an image request, as chat's.

    request.py        the body of POST /v1/responses (pydantic), the image tool's fields
    conversation.py   input items, instructions and stored turns -> the chat request that
                      draws them; the tool's fields laid over the order (`order_options`)
    answer.py         `Responses.start` (the chat turn, admitted) and the `Answer` it returns:
                      the Response objects of one request, completed, failed or cancelled
    output.py         the Response object and its items, ids, usage, error codes
    events.py         the server-sent events of a streamed Response
    store.py          records kept in the ImageStore beside the images, owner-checked
    background.py     background responses: a thread, a heartbeat, cancel marks
"""
