"""Write `snakemake.params.content` to the rule's output as JSON, atomically (lmmvae.atomic)."""

import json

from lmmvae.atomic import write_text

out = snakemake.output[0]  # noqa: F821 (set by Snakemake's script directive)
write_text(json.dumps(snakemake.params.content, indent=1), out)  # noqa: F821
with open(snakemake.log[0], "w") as fh:  # noqa: F821
    fh.write(f"wrote {out}\n")
