"""The official `stripe` Python library against the till sandbox PSP.

Run by the Rust test `stripe_python` (tests/sandbox/stripe_python.rs), or by
hand against a running sandbox:

    pip install stripe
    SANDBOX_URL=http://127.0.0.1:8081 SANDBOX_SECRET_KEY=sk_test_... \
        python3 tests/stripe_python/test_sandbox.py

Exits 0 and prints "ALL OK" when every check passed.
"""

import base64
import json
import os
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import stripe

# Never hang a test run: the whole script has 90 seconds.
signal.alarm(90)

stripe.api_base = os.environ["SANDBOX_URL"]
stripe.api_key = os.environ.get("SANDBOX_SECRET_KEY", "sk_test_till_sandbox_0000000000000000")
stripe.max_network_retries = 0

RECEIVED = []
# The id of the report file downloaded without the library (no Stripe-Version).
FILE_ID = []


class Receiver(BaseHTTPRequestHandler):
    """Captures webhooks: (payload, Stripe-Signature)."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        payload = self.rfile.read(length).decode("utf-8")
        RECEIVED.append((payload, self.headers.get("Stripe-Signature", "")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_receiver():
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"


def expect_error(kind, call, status=None, code=None):
    try:
        call()
    except kind as e:
        if status is not None:
            assert e.http_status == status, (e.http_status, status)
        if code is not None:
            assert e.code == code, (e.code, code)
        return e
    raise AssertionError(f"expected {kind.__name__}")


SESSION = dict(
    mode="payment",
    success_url="https://shop.example/thanks?session={CHECKOUT_SESSION_ID}",
    cancel_url="https://shop.example/cart",
    client_reference_id="checkout-py",
    line_items=[
        {"price_data": {"currency": "usd", "unit_amount": 2500, "product_data": {"name": "Mug"}}, "quantity": 2},
        {"price_data": {"currency": "usd", "unit_amount": 100, "product_data": {"name": "Tea"}}, "quantity": 1},
    ],
    metadata={"checkout_id": "c-py"},
    payment_intent_data={"metadata": {"payment_order_id": "po-py"}},
)


def check_checkout_sessions():
    session = stripe.checkout.Session.create(**SESSION, idempotency_key="py-session-1")
    assert session.id.startswith("cs_test_"), session.id
    assert session.object == "checkout.session"
    assert session.amount_total == 5100 and session.currency == "usd"
    assert session.status == "open" and session.payment_status == "unpaid"
    assert session.payment_intent is None
    assert session.url.endswith("/pay/" + session.id)
    assert session.metadata["checkout_id"] == "c-py"

    replay = stripe.checkout.Session.create(**SESSION, idempotency_key="py-session-1")
    assert replay.id == session.id
    other = dict(SESSION, client_reference_id="another")
    expect_error(stripe.IdempotencyError, lambda: stripe.checkout.Session.create(**other, idempotency_key="py-session-1"))

    fetched = stripe.checkout.Session.retrieve(session.id)
    assert fetched.id == session.id and fetched.amount_total == 5100
    expired = stripe.checkout.Session.expire(session.id)
    assert expired.status == "expired"
    expect_error(stripe.InvalidRequestError, lambda: stripe.checkout.Session.expire(session.id), status=400)
    expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.checkout.Session.retrieve("cs_test_nope"),
        status=404,
        code="resource_missing",
    )
    missing = expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.checkout.Session.create(mode="payment", success_url="https://x.example/ok"),
        status=400,
        code="parameter_missing",
    )
    assert missing.param == "line_items"
    return session.id


def check_authentication():
    expect_error(
        stripe.AuthenticationError,
        lambda: stripe.checkout.Session.retrieve("cs_test_x", api_key="sk_test_wrong_wrong_wrong"),
        status=401,
    )


# What confirming on the server needs on a current Stripe account: no
# payment method that redirects (or else a return_url).
NO_REDIRECTS = {"enabled": True, "allow_redirects": "never"}


def check_payment_intents():
    pi = stripe.PaymentIntent.create(
        amount=1000, currency="usd", payment_method="pm_card_visa", confirm=True,
        automatic_payment_methods=NO_REDIRECTS, statement_descriptor_suffix="PY TEST",
        metadata={"payment_order_id": "po-pi"}, description="order po-pi",
    )
    assert pi.id.startswith("pi_") and pi.status == "succeeded", pi
    assert pi.automatic_payment_methods.allow_redirects == "never", pi
    assert pi.statement_descriptor_suffix == "PY TEST", pi
    assert stripe.PaymentIntent.retrieve(pi.id).metadata["payment_order_id"] == "po-pi"

    declined = expect_error(
        stripe.CardError,
        lambda: stripe.PaymentIntent.create(
            amount=1000, currency="usd", payment_method="pm_card_chargeDeclinedInsufficientFunds", confirm=True,
            payment_method_types=["card"],
        ),
        status=402,
        code="card_declined",
    )
    assert declined.error.decline_code == "insufficient_funds"
    failed_pi = declined.error.payment_intent
    assert failed_pi.status == "requires_payment_method"
    confirmed = stripe.PaymentIntent.confirm(failed_pi.id, payment_method="pm_card_visa")
    assert confirmed.status == "succeeded"
    expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.PaymentIntent.create(
            amount=1000, currency="usd", payment_method="pm_nope", confirm=True, automatic_payment_methods=NO_REDIRECTS
        ),
        status=400,
        code="resource_missing",
    )
    return pi


def check_confirmation_needs():
    """Without automatic_payment_methods[allow_redirects]=never, payment_method_types
    or a return_url, the library's (current) version refuses a server-side
    confirmation, as Stripe does."""
    refused = expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.PaymentIntent.create(amount=700, currency="usd", payment_method="pm_card_visa", confirm=True),
        status=400,
    )
    assert "A `return_url` must be specified" in refused.user_message, refused.user_message
    with_return = stripe.PaymentIntent.create(
        amount=700, currency="usd", payment_method="pm_card_visa", confirm=True,
        return_url="https://shop.example/back",
    )
    assert with_return.status == "succeeded", with_return
    # Pinned before 2023-08-16, an intent takes cards only: no return_url needed.
    old = stripe.PaymentIntent.create(
        amount=700, currency="usd", payment_method="pm_card_visa", confirm=True, stripe_version="2022-11-15"
    )
    assert old.status == "succeeded" and old.automatic_payment_methods is None, old


def sandbox_requests():
    """The sandbox's request log (a sandbox extension), newest first."""
    request = urllib.request.Request(
        stripe.api_base + "/v1/sandbox/requests?limit=100",
        headers={"Authorization": f"Bearer {stripe.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))["data"]


def check_versions():
    """The library pins its own Stripe-Version on every call; the sandbox
    takes it and logs it. A version Stripe never released is refused."""
    pinned = stripe.api_version
    assert pinned, "the library pins a version"
    stripe.Transfer.create(amount=100, currency="usd", destination="acct_seller_py", idempotency_key="py-versioned")
    bad = expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.Transfer.create(
            amount=100, currency="usd", destination="acct_seller_py", stripe_version="2023-01-01",
            idempotency_key="py-bad-version",
        ),
        status=400,
    )
    assert bad.user_message == "Invalid Stripe API version: 2023-01-01", bad.user_message
    by_key = {entry["idempotency_key"]: entry for entry in sandbox_requests()}
    assert by_key["py-versioned"]["stripe_version"] == pinned, by_key["py-versioned"]
    assert by_key["py-versioned"]["served_version"] == pinned, by_key["py-versioned"]
    assert by_key["py-bad-version"]["served_version"] is None, by_key["py-bad-version"]
    # Every call the library made carried a version; the one request without
    # it is the file download made with urllib (check_report_runs).
    log = sandbox_requests()
    assert {e["stripe_version"] for e in log if e["stripe_version"]} == {pinned, "2022-11-15", "2023-01-01"}, log
    assert [e["path"] for e in log if e["stripe_version"] is None] == [f"/v1/files/{FILE_ID[0]}/contents"], log


def check_refunds_and_transfers(pi):
    refund = stripe.Refund.create(payment_intent=pi.id, amount=300, metadata={"why": "test"})
    assert refund.id.startswith("re_") and refund.status == "pending" and refund.amount == 300
    assert stripe.Refund.retrieve(refund.id).id == refund.id
    expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.Refund.create(payment_intent=pi.id, amount=800),
        status=400,
        code="amount_too_large",
    )
    transfer = stripe.Transfer.create(amount=200, currency="usd", destination="acct_seller_py")
    assert transfer.id.startswith("tr_") and transfer.destination == "acct_seller_py"
    assert stripe.Transfer.retrieve(transfer.id).amount == 200


def check_manual_capture():
    """capture_method=manual: authorized, then captured in part (replayed
    under its idempotency key), or canceled; each only once."""
    manual = dict(
        amount=1500, currency="usd", payment_method="pm_card_visa", confirm=True,
        automatic_payment_methods=NO_REDIRECTS, capture_method="manual",
    )
    pi = stripe.PaymentIntent.create(**manual, metadata={"payment_order_id": "po-manual"})
    assert pi.status == "requires_capture" and pi.capture_method == "manual", pi
    assert pi.amount_capturable == 1500 and pi.amount_received == 0 and pi.latest_charge.startswith("ch_"), pi
    captured = stripe.PaymentIntent.capture(pi.id, amount_to_capture=1000, idempotency_key="py-capture-1")
    assert captured.status == "succeeded" and captured.amount_received == 1000, captured
    assert captured.amount_capturable == 0, captured
    replay = stripe.PaymentIntent.capture(pi.id, amount_to_capture=1000, idempotency_key="py-capture-1")
    assert replay.id == pi.id and replay.amount_received == 1000
    again = expect_error(
        stripe.InvalidRequestError, lambda: stripe.PaymentIntent.capture(pi.id), status=400,
        code="payment_intent_unexpected_state",
    )
    assert "status of succeeded" in again.user_message, again.user_message
    expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.Refund.create(payment_intent=pi.id, amount=1001),
        status=400,
        code="amount_too_large",
    )

    other = stripe.PaymentIntent.create(**manual)
    canceled = stripe.PaymentIntent.cancel(other.id, cancellation_reason="abandoned")
    assert canceled.status == "canceled" and canceled.cancellation_reason == "abandoned", canceled
    assert canceled.canceled_at and canceled.amount_capturable == 0, canceled
    expect_error(
        stripe.InvalidRequestError, lambda: stripe.PaymentIntent.capture(other.id), status=400,
        code="payment_intent_unexpected_state",
    )
    expect_error(stripe.InvalidRequestError, lambda: stripe.PaymentIntent.cancel(other.id), status=400)


def dispute_of(pi):
    """The dispute the sandbox opens on a charge of pm_card_createDispute."""
    deadline = time.time() + 20
    while time.time() < deadline:
        found = stripe.Dispute.list(payment_intent=pi.id, limit=1).data
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no dispute of {pi.id}")


def until_closed(dispute_id):
    deadline = time.time() + 15
    while time.time() < deadline:
        dispute = stripe.Dispute.retrieve(dispute_id)
        if dispute.status in ("won", "lost"):
            return dispute
        time.sleep(0.1)
    raise AssertionError(f"dispute {dispute_id} was never decided")


def check_disputes():
    """pm_card_createDispute: disputed after its charge, won with
    winning_evidence (the amount comes back), or lost when closed."""
    disputed = dict(
        amount=2000, currency="usd", payment_method="pm_card_createDispute", confirm=True,
        automatic_payment_methods=NO_REDIRECTS,
    )
    pi = stripe.PaymentIntent.create(**disputed, metadata={"payment_order_id": "po-dispute"})
    assert pi.status == "succeeded", pi
    listed = dispute_of(pi)
    dispute = stripe.Dispute.retrieve(listed.id)
    assert dispute.id.startswith("du_") and dispute.object == "dispute", dispute
    assert dispute.status == "needs_response" and dispute.reason == "fraudulent", dispute
    assert dispute.amount == 2000 and dispute.charge == pi.latest_charge and dispute.payment_intent == pi.id
    assert dispute.evidence.uncategorized_text is None and not dispute.evidence_details.has_evidence
    withdrawal = dispute.balance_transactions[0]
    assert withdrawal.reporting_category == "dispute" and withdrawal.amount == -2000, withdrawal
    assert withdrawal.fee == 1500 and withdrawal.net == -3500, withdrawal

    submitted = stripe.Dispute.modify(dispute.id, evidence={"uncategorized_text": "winning_evidence"})
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1, submitted
    won = until_closed(dispute.id)
    assert won.status == "won", won
    reversal = won.balance_transactions[1]
    assert reversal.reporting_category == "dispute_reversal" and reversal.amount == 2000, reversal
    expect_error(stripe.InvalidRequestError, lambda: stripe.Dispute.close(dispute.id), status=400)

    lost_pi = stripe.PaymentIntent.create(**disputed)
    to_close = dispute_of(lost_pi)
    expect_error(
        stripe.InvalidRequestError, lambda: stripe.Refund.create(payment_intent=lost_pi.id), status=400,
        code="charge_disputed",
    )
    closed = stripe.Dispute.close(to_close.id)
    assert closed.status == "lost", closed
    expect_error(
        stripe.InvalidRequestError, lambda: stripe.Dispute.retrieve("du_nope"), status=404, code="resource_missing"
    )


def check_report_runs():
    """Stripe's Reporting API: a run of today's itemized report, read until it
    succeeds, then its file downloaded with the secret key as `curl -u` does."""
    today = int(time.time()) // 86400 * 86400
    interval = {"interval_start": today, "interval_end": today + 86400}
    run = stripe.reporting.ReportRun.create(
        report_type="balance_change_from_activity.itemized.3",
        parameters=dict(interval, columns=["balance_transaction_id", "net", "payment_metadata[payment_order_id]"]),
    )
    assert run.id.startswith("frr_") and run.object == "reporting.report_run", run
    assert run.status == "pending" and run.result is None, run
    deadline = time.time() + 15
    while run.status == "pending" and time.time() < deadline:
        time.sleep(0.1)
        run = stripe.reporting.ReportRun.retrieve(run.id)
    assert run.status == "succeeded", run
    assert run.result.object == "file" and run.result.purpose == "finance_report_run", run.result

    FILE_ID.append(run.result.id)
    token = base64.b64encode(f"{stripe.api_key}:".encode()).decode()
    request = urllib.request.Request(run.result.url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        csv = response.read().decode("utf-8")
    assert len(csv.encode("utf-8")) == run.result.size, (len(csv), run.result.size)
    lines = csv.splitlines()
    assert lines[0] == "balance_transaction_id,net,payment_metadata[payment_order_id]", lines[0]
    assert any(line.endswith(",po-pi") for line in lines[1:]), csv

    expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.reporting.ReportRun.create(report_type="balance.summary.1", parameters=interval),
        status=400,
        code="parameter_invalid",
    )
    expect_error(
        stripe.InvalidRequestError,
        lambda: stripe.reporting.ReportRun.create(
            report_type="balance_change_from_activity.itemized.3",
            parameters={"interval_start": today, "interval_end": today},
        ),
        status=400,
        code="parameter_invalid",
    )


def check_webhooks(endpoint, session_id):
    deadline = time.time() + 15
    while time.time() < deadline:
        for payload, signature in list(RECEIVED):
            event = stripe.Webhook.construct_event(payload, signature, endpoint.secret)
            if event.type == "checkout.session.expired" and event.data.object.id == session_id:
                expect_error(
                    stripe.SignatureVerificationError,
                    lambda: stripe.Webhook.construct_event(payload.replace("expired", "complete"), signature, endpoint.secret),
                )
                expect_error(
                    stripe.SignatureVerificationError,
                    lambda: stripe.Webhook.construct_event(payload, signature, "whsec_wrong"),
                )
                return
        time.sleep(0.1)
    raise AssertionError(f"no checkout.session.expired webhook; got {len(RECEIVED)} others")


def main():
    endpoint = stripe.WebhookEndpoint.create(
        url=start_receiver(), enabled_events=["checkout.session.expired", "payment_intent.succeeded"]
    )
    assert endpoint.id.startswith("we_") and endpoint.secret.startswith("whsec_")
    session_id = check_checkout_sessions()
    check_authentication()
    pi = check_payment_intents()
    check_confirmation_needs()
    check_refunds_and_transfers(pi)
    check_manual_capture()
    check_disputes()
    check_report_runs()
    check_webhooks(endpoint, session_id)
    check_versions()
    print("ALL OK")


if __name__ == "__main__":
    main()
