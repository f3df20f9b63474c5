"""Parts of the speed harness ``scripts/bench.py``.

- :mod:`.grid`: which configurations are measured, at what size, and how they are built (Hydra);
- :mod:`.bounds`: the same GEMMs and convolutions on random tensors, alone;
- :mod:`.baseline`: the same model trained through a torchvision Dataset and a DataLoader;
- :mod:`.measure`: timing, peak memory and the interleaved rounds of one group;
- :mod:`.extras`: start-up latency of ``dropbench run`` and serial vs. parallel sweeps;
- :mod:`.output`: the CSV, the targets and the Markdown report.
"""
