"""Run a script of the repository with a fault injected on ONE rank, under the launch users have:

    accelerate launch --multi_gpu --num_processes N tests/rank_fault.py FAULT[@RANK] SCRIPT [ARGS...]

The fault (default rank 1) is planted by patching the package in that rank's process only, then SCRIPT runs as
``__main__``; the other ranks run the code unchanged. Used by tests/test_rank_faults.py.

Faults:
  latents_inf       CDM: the frozen VAE's latents of every batch are +inf
  nan_grad:K        training: the gradients of the K-th micro-batch are NaN (its loss stays finite)
  old_listing       training: the newest checkpoint is missing from this rank's listing of output_dir
  blind_resume      training: this rank cannot see any checkpoint's trainer_state.json
  stall             synthesis: the rank stops producing (sleeps) before it marks its shard done
  stall_detection   synthesis from photos: the rank's text-line detection stops (sleeps) at its first photo
  kill_after:K      synthesis / infer: SIGKILL this rank once K batches are committed / written
  record_grads:PATH training: after each backward, append the gradients' storage addresses to PATH (JSON lines)
"""
import json
import os
import runpy
import signal
import sys
import time


def plant(name: str, arg: str) -> None:
    if name == "latents_inf":
        from textssr.train.stages import CDMStage
        encode = CDMStage._encode
        CDMStage._encode = lambda self, x, g: encode(self, x, g) * float("inf")
    elif name == "nan_grad":
        from textssr.train.stages import CDMStage, VAEStage
        calls = []
        for stage in (VAEStage, CDMStage):
            def loss(self, model, batch, generator, _real=stage.loss):
                calls.append(1)
                value = _real(self, model, batch, generator)
                if len(calls) == int(arg):
                    value.register_hook(lambda grad: grad * float("nan"))
                return value
            stage.loss = loss
    elif name == "old_listing":
        from textssr.train import checkpoint
        listing = checkpoint.list_checkpoints
        checkpoint.list_checkpoints = lambda output_dir: listing(output_dir)[:-1]
    elif name == "blind_resume":
        real = os.path.isfile
        os.path.isfile = lambda path: False if str(path).endswith("trainer_state.json") else real(path)
    elif name == "stall":
        from textssr.synth import runner
        shard = runner.run_shard

        def run_shard(*args, **kwargs):
            shard(*args, **kwargs)
            time.sleep(300)  # past any ddp_timeout the tests give; never forever, even if the launcher is gone
        runner.run_shard = run_shard
    elif name == "stall_detection":
        from textssr.eval.lines import LineFinder
        LineFinder.detect = lambda *args, **kwargs: time.sleep(300)  # never forever, as `stall`
    elif name == "kill_after":
        from textssr.infer import runner as infer_runner
        from textssr.synth import runner as synth_runner
        done = []

        def counted(real):
            def wrapped(*args, **kwargs):
                out = real(*args, **kwargs)
                done.append(1)
                if len(done) >= int(arg):
                    os.kill(os.getpid(), signal.SIGKILL)
                return out
            return wrapped
        infer_runner.write_batch = counted(infer_runner.write_batch)
        synth_runner.ShardCommitter.__call__ = counted(synth_runner.ShardCommitter.__call__)
    elif name == "record_grads":
        from accelerate import Accelerator
        backward = Accelerator.backward

        def recorded(self, loss, **kwargs):
            backward(self, loss, **kwargs)
            model = self._models[0]
            with open(arg, "a") as f:
                f.write(json.dumps([p.grad.data_ptr() for p in model.parameters() if p.grad is not None]) + "\n")
        Accelerator.backward = recorded
    else:
        raise SystemExit(f"rank_fault.py: unknown fault {name!r}")


def main() -> None:
    fault, script, *args = sys.argv[1:]
    name, _, rank = fault.partition("@")
    name, _, arg = name.partition(":")
    if os.environ.get("RANK", "0") == (rank or "1"):
        plant(name, arg)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
