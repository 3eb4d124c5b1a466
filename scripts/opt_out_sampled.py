# Usage: python3 scripts/opt_out_sampled.py FHIR-BASE VALUES.json "TOKEN COMMAND"
# Records an opt-out (a patient-privacy Consent, policyRule OPTOUT, dated now) for every fifth
# patient of the benchmark's sampled query values, as the loading participant's client, so that a
# fifth of the searches ask about an opted-out patient.
import json, subprocess, sys, urllib.request, datetime
base, values, token_cmd = sys.argv[1], sys.argv[2], sys.argv[3]
token = subprocess.check_output(token_cmd, shell=True, text=True).strip()
if token.startswith("{"):
    token = json.loads(token)["access_token"]
samples = json.load(open(values))
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
ids = [s["id"] for s in samples][::5]
for pid in ids:
    consent = {"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"}, "dateTime": now,
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]}}
    req = urllib.request.Request(f"{base}/Consent", data=json.dumps(consent).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201, r.status
print(f"opted out {len(ids)} of {len(samples)} sampled patients")
