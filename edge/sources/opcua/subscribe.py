"""Creating subscriptions and monitored items: in batches, every result checked.

asyncua's ``subscribe_data_change`` neither batches nor raises per failed item; here each
CreateMonitoredItems request carries ``subscribe_batch`` items and every result is looked at.
A node the server cannot apply the deadband filter to is subscribed again without it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uaerrors import UaStructParsingError

from .config import GroupConfig
from .fastpublish import DataChanges, decode_publish_response, records_from_notification
from .resolve import Target

log = logging.getLogger("edge.sources.opcua")

_FILTER_CODES = {
    ua.StatusCodes.BadFilterNotAllowed, ua.StatusCodes.BadMonitoredItemFilterUnsupported,
    ua.StatusCodes.BadMonitoredItemFilterInvalid, ua.StatusCodes.BadDeadbandFilterInvalid,
}


class Item:
    __slots__ = ("point", "nodeid", "unit")

    def __init__(self, point: str, nodeid: ua.NodeId, unit: str | None):
        self.point, self.nodeid, self.unit = point, nodeid, unit


def use_fast_publish(session: Any, on_fallback: Callable[[Exception], None] | None = None) -> None:
    """This session's Publish responses decoded by fastpublish: data changes arrive as records.

    Replaces ``UaSession.publish`` on this one session object (asyncua's publish loop calls
    ``self.publish``); the request is built as asyncua builds it. Should our decoder refuse a
    response, asyncua's own decoder gets it, so a gap in ours costs speed, never data;
    ``on_fallback`` hears of each such response.
    """
    if getattr(session, "_zerobus_fast_publish", False):
        return

    async def publish(acks: list) -> ua.PublishResponse:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await session._send_request(request, timeout=0)
        spare = data.copy()
        try:
            return decode_publish_response(data)
        except Exception as exc:  # noqa: BLE001 - asyncua's decoder decides below
            try:
                response = struct_from_binary(ua.PublishResponse, spare)
            except Exception as ex:
                log.exception("cannot parse a publish response from the server")
                raise UaStructParsingError from ex
            log.warning("publish response decoded by asyncua's generic decoder, ours refused it: %r", exc)
            if on_fallback is not None:
                on_fallback(exc)
            return response

    session.publish = publish
    session._zerobus_fast_publish = True


class _Subscription(Subscription):
    """asyncua's Subscription, minus one task/object per notification: records go straight to us."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters, collector: Any):
        super().__init__(session, params, handler=collector)
        self._collector = collector

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        msg = publish_result.NotificationMessage
        if not msg.NotificationData:
            return
        self.last_sequence_number = int(msg.SequenceNumber)
        for notif in msg.NotificationData:
            if type(notif) is DataChanges:
                await self._collector._on_items(self, notif.items)
            elif isinstance(notif, ua.DataChangeNotification):
                await self._collector._on_items(self, records_from_notification(notif))
            elif isinstance(notif, ua.StatusChangeNotification):
                self._collector._on_subscription_status(self, notif.Status)


async def subscribe_group(src: Any, client: Client, group: GroupConfig, targets: list[Target]):
    """Subscribe ``targets`` for collector ``src``; returns (subscribed, [(point, why failed)], note)."""
    cfg = src.cfg
    failed: list[tuple[str, str]] = []
    ok = 0
    dropped_filter = 0
    ms = float(group.publishing_interval) * 1000
    mfilter = None
    if group.deadband_type != "none":
        mfilter = ua.DataChangeFilter()
        mfilter.Trigger = ua.DataChangeTrigger.StatusValue
        mfilter.DeadbandType = 1 if group.deadband_type == "absolute" else 2
        mfilter.DeadbandValue = float(group.deadband_value)
    for s0 in range(0, len(targets), cfg.max_items_per_subscription):
        part = targets[s0:s0 + cfg.max_items_per_subscription]
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = ms
        params.RequestedLifetimeCount = 10_000
        params.RequestedMaxKeepAliveCount = client.get_keepalive_count(ms)
        # Bounds one publish response in our memory; a server holding more sets MoreNotifications.
        params.MaxNotificationsPerPublish = 20_000
        params.PublishingEnabled = True
        params.Priority = 0
        use_fast_publish(client.uaclient.session, src._publish_fallback)
        sub = _Subscription(client.uaclient.session, params, src)
        sub.set_overflow_disconnect_handler(client.uaclient.notify_transport_lost)
        await sub.init()
        # Registered with the client so its stale-subscription watchdog covers ours too.
        client._subscriptions.append(sub)
        for b0 in range(0, len(part), cfg.subscribe_batch):
            batch = part[b0:b0 + cfg.subscribe_batch]
            results = await _create_items(src, sub, group, batch, mfilter)
            retry = []
            for t, r in zip(batch, results):
                if isinstance(r, ua.StatusCode):
                    if mfilter is not None and r.value in _FILTER_CODES:
                        retry.append(t)
                    else:
                        failed.append((t.point, r.name))
                else:
                    ok += 1
            if retry:
                # The server cannot apply the deadband to these: take every change rather than none.
                for t, r in zip(retry, await _create_items(src, sub, group, retry, None)):
                    if isinstance(r, ua.StatusCode):
                        failed.append((t.point, r.name))
                    else:
                        ok += 1
                        dropped_filter += 1
    note = f"group {group.name}: deadband not supported for {dropped_filter} nodes, subscribed without" if dropped_filter else ""
    return ok, failed, note

async def _create_items(src: Any, sub: "_Subscription", group: GroupConfig, targets: list[Target], mfilter: Any):
    mirs = []
    for t in targets:
        handle = src._next_handle
        src._next_handle += 1
        src._items[handle] = Item(t.point, t.nodeid, t.unit)
        rv = ua.ReadValueId()
        rv.NodeId = t.nodeid
        rv.AttributeId = ua.AttributeIds.Value
        mp = ua.MonitoringParameters()
        mp.ClientHandle = handle
        mp.SamplingInterval = float(group.sampling_interval) * 1000
        mp.QueueSize = group.effective_queue_size()
        mp.DiscardOldest = True
        if mfilter is not None:
            mp.Filter = mfilter
        mir = ua.MonitoredItemCreateRequest()
        mir.ItemToMonitor = rv
        mir.MonitoringMode = ua.MonitoringMode.Reporting
        mir.RequestedParameters = mp
        mirs.append(mir)
    results = await sub.create_monitored_items(mirs)
    for mir, r in zip(mirs, results):
        if isinstance(r, ua.StatusCode):
            src._items.pop(mir.RequestedParameters.ClientHandle, None)
    return results
