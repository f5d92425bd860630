"""Validates FHIR resources with the independent `fhir.resources` models (R4B, the R4-compatible
release the package ships; Observation, Device, Patient, Flag, Bundle, OperationOutcome and
CapabilityStatement are the same there as in R4).

Usage: fhir_validate.py FILE, where FILE holds a JSON array of resources or NDJSON (one
resource per line). Each resource, and each resource inside a Bundle, is parsed by the model
of its resourceType; unknown elements, wrong types and missing required elements fail.
Prints "validated N resources: Type=count ..." and exits 0, or prints the first failure and
exits 1.
"""

import json
import sys
from collections import Counter

from fhir.resources.R4B import get_fhir_model_class


def load(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def validate(resource, counts, where):
    kind = resource.get("resourceType")
    if not kind:
        raise ValueError(f"{where}: no resourceType")
    get_fhir_model_class(kind).model_validate(resource)
    counts[kind] += 1
    if kind == "Bundle":
        for idx, entry in enumerate(resource.get("entry", [])):
            validate(entry["resource"], counts, f"{where}.entry[{idx}]")


def main():
    counts = Counter()
    for idx, resource in enumerate(load(sys.argv[1])):
        try:
            validate(resource, counts, f"resource[{idx}]")
        except Exception as err:  # the model's error says what is wrong
            print(f"INVALID resource[{idx}] ({resource.get('resourceType')}): {err}")
            sys.exit(1)
    total = sum(counts.values())
    summary = " ".join(f"{kind}={n}" for kind, n in sorted(counts.items()))
    print(f"validated {total} resources: {summary}")


if __name__ == "__main__":
    main()
