"""Write `snakemake.params.content` to the rule's output as JSON, atomically (temp name, rename)."""

import json
import os

out = snakemake.output[0]  # noqa: F821 (set by Snakemake's script directive)
tmp = f"{out}.tmp"
with open(tmp, "w") as fh:
    json.dump(snakemake.params.content, fh, indent=1)  # noqa: F821
os.replace(tmp, out)
with open(snakemake.log[0], "w") as fh:  # noqa: F821
    fh.write(f"wrote {out}\n")
