"""A synchronous NSQ client library: threads, blocking sockets, no event loop.

    from nsqd_sync.client import Producer, Consumer

    with Producer("127.0.0.1:4150") as p:
        p.pub("events", b"hello")

    def handle(message):
        print(message.body)          # return None/True: FIN; False or raise: REQ

    Consumer("events", "archive", handle, lookupd_http_addresses=["127.0.0.1:4161"],
             max_in_flight=100).run()
"""
from .connection import Connection
from .consumer import Consumer
from .errors import (ERROR_CLASSES, NSQAuthDisabled, NSQAuthError, NSQAuthFailed, NSQAuthFirst,
                     NSQBadBody, NSQBadChannel, NSQBadMessage, NSQBadProtocol, NSQBadTopic,
                     NSQConnectionError, NSQDPubFailed, NSQError, NSQFinFailed, NSQIdentifyFailed,
                     NSQInvalid, NSQMPubFailed, NSQProtocolError, NSQPubFailed, NSQReqFailed,
                     NSQTouchFailed, NSQUnauthorized, error_from_frame)
from .lookup import lookup_nsqd_addresses
from .message import Message
from .producer import Producer

__all__ = [
    "Producer", "Consumer", "Message", "Connection", "lookup_nsqd_addresses",
    "NSQError", "NSQConnectionError", "NSQProtocolError", "NSQInvalid", "NSQBadBody", "NSQBadTopic",
    "NSQBadChannel", "NSQBadMessage", "NSQPubFailed", "NSQMPubFailed", "NSQDPubFailed",
    "NSQFinFailed", "NSQReqFailed", "NSQTouchFailed", "NSQIdentifyFailed", "NSQAuthFailed",
    "NSQAuthFirst", "NSQAuthError", "NSQUnauthorized", "NSQAuthDisabled", "NSQBadProtocol",
    "ERROR_CLASSES", "error_from_frame",
]
