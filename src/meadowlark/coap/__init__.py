"""CoAP transport adapter (aiocoap): the only package that imports aiocoap."""
