"""Framework integrations, each behind an optional extra; ``import lineage`` imports none of them.

- ``lineage.integrations.torch`` (``lineage[torch]``): ``save_checkpoint`` / ``load_checkpoint``
  for a PyTorch loop (safetensors weights with optimizer, scheduler and RNG state, written
  atomically and hashed while written) and the resource sampler.
- ``lineage.integrations.hf`` (``lineage[transformers]``): ``LineageCallback``, a Hugging Face
  ``TrainerCallback``.
- ``lineage.integrations.lightning`` (``lineage[lightning]``): ``LineageLogger``, a Lightning
  ``Logger`` that also registers ``ModelCheckpoint`` saves.
- ``lineage.integrations.resources``: ``ResourceSampler`` (no framework needed).

Integrations record through the public run handle and the narrow ports they name; like every
hook here, they never raise a telemetry failure into training (STYLE habit 9) except where a
call of the user's own asks for it (``load_checkpoint`` refusing a corrupted file).
"""
