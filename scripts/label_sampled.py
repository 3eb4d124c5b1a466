# Usage: python3 scripts/label_sampled.py label  FHIR-BASE VALUES.json "TOKEN COMMAND"
#        python3 scripts/label_sampled.py attest FHIR-BASE VALUES.json "TOKEN COMMAND"
#
# label:  as the loading participant's client (the source of the data), sends a new version of
#         every Observation and Encounter of every fifth sampled patient (the third, eighth, ...:
#         not those scripts/opt_out_sampled.py opts out) with a sensitivity label of its own, PSY,
#         SUD or V in turn by patient, so that a fifth of the searches' matches are data the
#         privacy policy withholds from other participants without the patient's consent.
# attest: as another participant's client, attests a treatment relationship with every sampled
#         patient (POST Patient/[id]/$attest-treatment), so that this participant may search them
#         for treatment but is not the source of their data (its own data would pass the policy's
#         sensitive categories).
import json, subprocess, sys, urllib.request

mode, base, values, token_cmd = sys.argv[1:5]
token = subprocess.check_output(token_cmd, shell=True, text=True).strip()
if token.startswith("{"):
    token = json.loads(token)["access_token"]
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
samples = json.load(open(values))


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req) as r:
        text = r.read()
        return r.status, (json.loads(text) if text else None)


LABELS = [
    ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY"),
    ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "SUD"),
    ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "V"),
]

if mode == "attest":
    for s in samples:
        status, _ = call("POST", f"{base}/Patient/{s['id']}/$attest-treatment", {"resourceType": "Parameters"})
        assert status in (200, 201, 204), status
    print(f"attested a treatment relationship with {len(samples)} sampled patients")
elif mode == "label":
    ids = [s["id"] for s in samples][2::5]
    labelled = 0
    for n, pid in enumerate(ids):
        system, code = LABELS[n % len(LABELS)]
        for ty in ("Observation", "Encounter"):
            url = f"{base}/{ty}?patient={pid}&_count=1000"
            while url:
                status, page = call("GET", url)
                assert status == 200, status
                for entry in page.get("entry", []):
                    r = entry["resource"]
                    if r.get("resourceType") != ty:
                        continue
                    meta = r.setdefault("meta", {})
                    meta["security"] = meta.get("security", []) + [{"system": system, "code": code}]
                    status, _ = call("PUT", f"{base}/{ty}/{r['id']}", r)
                    assert status == 200, status
                    labelled += 1
                url = next((l["url"] for l in page.get("link", []) if l["relation"] == "next"), None)
    print(f"labelled {labelled} resources of {len(ids)} of {len(samples)} sampled patients")
else:
    sys.exit(f"unknown mode {mode}: label or attest")
