"""X-Twilio-Signature: Twilio's published test vectors validate; any tampering fails."""

from __future__ import annotations

import pytest

from voicebot.telephony.signature import compute_twilio_signature, validate_twilio_signature

# Test vectors from Twilio's helper libraries (twilio-python tests/unit/test_request_validator.py).
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

# A real voice webhook, from twilio-ruby spec/util/request_validator_spec.rb.
RUBY_TOKEN = "2bd9e9638872de601313dc77410d3b23"
RUBY_URL = "http://twiliotests.heroku.com/validate/voice"
RUBY_PARAMS = {
    "ToState": "California",
    "CalledState": "California",
    "Direction": "inbound",
    "FromState": "CA",
    "AccountSid": "ACba8bc05eacf94afdae398e642c9cc32d",
    "Caller": "+14153595711",
    "CallerZip": "94108",
    "CallerCountry": "US",
    "From": "+14153595711",
    "FromCity": "SAN FRANCISCO",
    "CallerCity": "SAN FRANCISCO",
    "To": "+14157669926",
    "FromZip": "94108",
    "FromCountry": "US",
    "ToCity": "",
    "CallStatus": "ringing",
    "CalledCity": "",
    "CallerState": "CA",
    "CalledZip": "",
    "ToZip": "",
    "ToCountry": "US",
    "CallSid": "CA136d09cd59a3c0ec8dbff44da5c03f31",
    "CalledCountry": "US",
    "Called": "+14157669926",
    "ApiVersion": "2010-04-01",
    "ApplicationSid": "AP44efecad51364e80b133bb7c07eb8204",
}
RUBY_SIGNATURE = "oVb2kXoVy8GEfwBDjR8bk/ZZ6eA="


def test_known_vector():
    assert compute_twilio_signature(TOKEN, URL, PARAMS) == SIGNATURE
    assert validate_twilio_signature(TOKEN, URL, PARAMS, SIGNATURE)


def test_real_voice_webhook_vector():
    assert compute_twilio_signature(RUBY_TOKEN, RUBY_URL, RUBY_PARAMS) == RUBY_SIGNATURE
    assert validate_twilio_signature(RUBY_TOKEN, RUBY_URL, RUBY_PARAMS, RUBY_SIGNATURE)


def test_repeated_parameters_sign_every_value_sorted():
    params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234"]}
    assert compute_twilio_signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_multidict_from_aiohttp_forms_works():
    from multidict import MultiDict

    form = MultiDict(
        [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    )
    assert compute_twilio_signature(TOKEN, URL, form) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", SIGNATURE),  # port removed
        (URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # Twilio signed with :443
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # :80
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_default_ports_are_tolerated_like_twilios_libraries(url, signature):
    assert validate_twilio_signature(TOKEN, url, PARAMS, signature)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u, p, s, t: (u, {**p, "Digits": "9999"}, s, t),
        lambda u, p, s, t: (u, {**p, "Extra": "1"}, s, t),
        lambda u, p, s, t: (u.replace("foo=1", "foo=2"), p, s, t),
        lambda u, p, s, t: (u.replace("mycompany", "evil"), p, s, t),
        lambda u, p, s, t: (u, p, s, "54321"),
        lambda u, p, s, t: (u, p, s[:-2] + "A=", t),
        lambda u, p, s, t: (u, p, "", t),
        lambda u, p, s, t: (u, p, None, t),
        lambda u, p, s, t: (u, p, "not base64 at all \u00e9", t),
    ],
)
def test_tampering_fails(tamper):
    url, params, signature, token = tamper(URL, PARAMS, SIGNATURE, TOKEN)
    assert not validate_twilio_signature(token, url, params, signature)


def test_empty_auth_token_never_validates():
    assert not validate_twilio_signature("", URL, PARAMS, compute_twilio_signature("", URL, PARAMS))
