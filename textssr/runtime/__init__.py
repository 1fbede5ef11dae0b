"""How a run uses its hardware: precisions (measured "auto", accelerate's setting, the GPU switches), the process
group with its timeout, per-phase step timing."""
