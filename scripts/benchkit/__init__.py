"""Parts of the speed harness ``scripts/bench.py``.

- :mod:`.grid`: which configurations are measured, at what size, and how they are built (Hydra);
- :mod:`.bounds`: the same GEMMs and convolutions on random tensors, alone;
- :mod:`.baseline`: the same model trained through a torchvision Dataset and a DataLoader;
- :mod:`.measure`: timing, peak memory and the interleaved rounds of one group;
- :mod:`.dropconnect`: per-example DropConnect's layer step at every p, and fresh runs;
- :mod:`.extras`: start-up latency of ``dropbench run``, a fresh run's first epoch, and
  serial vs. parallel sweeps;
- :mod:`.rows` and :mod:`.markdown`: the CSV, the targets and the Markdown report;
- :mod:`.machine`: the CPU's or GPU's name.
"""
