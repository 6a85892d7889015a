"""After the send: delivery reports, replies and STOP.

``sms-worker inbound`` (``service``) takes OVH's callbacks over HTTP; in pull mode ``sms-worker
run`` polls OVH instead (``pull``). Both publish the same events (``events``, ``publish``):
``DeliveryReport``, ``IncomingSms`` and ``OptOut``, on the request's ``reply_to`` queue.
"""
