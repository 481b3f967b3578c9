"""The training loop: stages in order, DDP (torchrun), atomic resumable checkpoints, TensorBoard + CSV logging.

Run with `ckd distill --config FILE` or `torchrun --nproc_per_node N -m ckd.distill --config FILE`.
Ranks use gloo on CPU and NCCL on GPUs; rank 0 logs and writes checkpoints. `out/checkpoint.pt` holds the model,
optimizer, scheduler, RNG (torch, numpy, python) and sampler state, the stage and step; `--resume` continues
from it and reproduces an uninterrupted run exactly. The end product is `out/student.safetensors` (+ .json):
the CKD student network the tracker loads.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ckd.distill.config import DistillConfig, StageConfig, dump_config
from ckd.distill.data import SampleSpec, StreamSampler, build_clips, collate, make_sample
from ckd.distill.losses import random_search_mask
from ckd.distill.model import DistillModel
from ckd.errors import CKDError
from ckd.model.checkpoint import save_model
from ckd.model.network import CKDNet

CHECKPOINT = "checkpoint.pt"
STUDENT = "student.safetensors"


def _dist_setup() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, device


def param_groups(model: DistillModel, stage: StageConfig) -> list[dict]:
    """AdamW groups: heads (+projections) at lr_head, student ViTs at lr_backbone, teacher ViTs at lr_teacher."""
    groups: dict[str, list] = {"head": [], "backbone": [], "teacher": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "box_head" in name or name.startswith("proj_"):
            groups["head"].append(p)
        elif name.startswith("teacher_"):
            groups["teacher"].append(p)
        else:
            groups["backbone"].append(p)
    lrs = {"head": stage.lr_head, "backbone": stage.lr_backbone, "teacher": stage.lr_teacher}
    return [{"params": ps, "lr": lrs[k], "name": k} for k, ps in groups.items() if ps]


def _generator(*key: int) -> torch.Generator:
    """A torch generator seeded from integers (masks and keep ratios are a pure function of seed/stage/step)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _atomic_torch_save(obj: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def state_digest(module: torch.nn.Module) -> str:
    """sha256 over every tensor of a state dict (name, bytes): equal digests = bit-identical weights."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Logger:
    """Rank-0 scalars to TensorBoard (optional) and a long-format CSV: global_step, stage, name, value."""

    def __init__(self, out: Path, tensorboard: bool, resume_step: int) -> None:
        self.path = out / "log.csv"
        rows = []
        if resume_step and self.path.exists():  # drop rows a killed run wrote after its last checkpoint
            with open(self.path, newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if int(r[0]) < resume_step]
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["global_step", "stage", "name", "value"])
            w.writerows(rows)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step or None)
            except ImportError:
                print("tensorboard is not installed: logging to log.csv only")

    def log(self, step: int, stage: str, scalars: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerows([step, stage, k, f"{v:.6g}"] for k, v in scalars.items())
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{stage}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _load_teachers(model: DistillModel, path: str) -> None:
    """Teachers (and, when shapes fit, nothing else) from a previous run's training checkpoint."""
    if not Path(path).is_file():
        raise CKDError(f"teacher_init checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    teachers = {k: v for k, v in state.items() if k.startswith(("teacher_rgb.", "teacher_tir."))}
    missing, _ = model.load_state_dict(teachers, strict=False)
    if any(k.startswith("teacher_") for k in missing):
        raise CKDError(f"{path}: teacher weights do not fit the configured teacher architecture")


def export_student(model: DistillModel, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """The CKD student as the kit's inference checkpoint (drop path off in its config)."""
    net = CKDNet(dataclasses.replace(model.student_cfg, drop_path=0.0))
    net.load_state_dict(model.student.state_dict())
    return save_model(net.eval(), path, metadata)


def train(cfg: DistillConfig, out: str | Path, resume: bool = False) -> Path:
    """Run every stage of `cfg` into `out`; returns the student checkpoint path.

    The torch thread count set from `cfg.threads` is restored afterwards.
    """
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _train(cfg, Path(out), resume)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: DistillConfig, out: Path, resume: bool) -> Path:
    from tqdm import tqdm

    rank, world, device = _dist_setup()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = DistillModel(cfg.student, cfg.teacher, cfg.loss_weights).to(device)
    if cfg.teacher_init:
        _load_teachers(model, cfg.teacher_init)
    if cfg.init_from:
        if not Path(cfg.init_from).is_file():
            raise CKDError(f"init_from checkpoint not found: {cfg.init_from}")
        model.load_state_dict(torch.load(cfg.init_from, map_location="cpu", weights_only=False)["model"])
    ckpt = None
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise CKDError(f"--resume: no {CHECKPOINT} in {out}")
        ckpt = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        if ckpt["world"] != world:
            raise CKDError(f"{out / CHECKPOINT} was written by {ckpt['world']} processes, this run has {world}")
        model.load_state_dict(ckpt["model"])
        _set_rng_state(ckpt["rng"])
    start_stage, start_step = (ckpt["stage"], ckpt["step"]) if ckpt else (0, 0)
    global_step = ckpt["global_step"] if ckpt else 0
    clips = build_clips(cfg.data, cfg.augment)
    s = cfg.student
    spec = SampleSpec(
        template_size=s.template_size,
        search_size=s.search_size,
        template_factor=s.template_factor,
        search_factor=s.search_factor,
        augment=cfg.augment,
    )
    logger = Logger(out, cfg.tensorboard, global_step) if rank == 0 else None
    if rank == 0 and not resume:
        (out / "config.json").write_text(dump_config(cfg) + "\n")
    amp = cfg.amp and device.type == "cuda"
    for si in range(start_stage, len(cfg.stages)):
        st = cfg.stages[si]
        step = start_step if si == start_stage else 0
        if step >= st.steps:
            continue
        if st.name == "ckd" and step == 0 and cfg.init_students_from_teachers and not cfg.init_from:
            model.init_students_from_teachers()
        model.set_stage(st.name, st.freeze_teachers)
        opt = torch.optim.AdamW(param_groups(model, st), weight_decay=st.weight_decay)
        drop = st.lr_drop_step

        def lr_lambda(k: int, drop: int | None = drop, factor: float = st.lr_drop_factor) -> float:
            return factor if drop is not None and k >= drop else 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        sampler = StreamSampler(rank, world)
        if ckpt is not None and si == start_stage and step > 0:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            sampler.load_state_dict(ckpt["sampler"])
        net = model
        if world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        params = [p for p in model.parameters() if p.requires_grad]
        ns = s.num_search_tokens
        bar = tqdm(total=st.steps, initial=step, desc=f"{st.name} ({si + 1}/{len(cfg.stages)})", disable=rank != 0)
        while step < st.steps:
            samples = [make_sample(clips, i, cfg.seed * 16 + si, spec) for i in sampler.next_indices(st.batch_size)]
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(samples).items()}
            mask = random_search_mask(st.batch_size, ns, st.mask_prob, _generator(cfg.seed, si, step, rank)).to(device)
            keep = st.keep_ratios[
                int(torch.randint(len(st.keep_ratios), (1,), generator=_generator(cfg.seed, si, step)))
            ]
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                losses = net(batch, search_mask=mask, keep_ratio=keep)
            opt.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(opt)
            if st.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, st.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            global_step += 1
            bar.update(1)
            if logger is not None and (step % cfg.log_every == 0 or step == st.steps):
                scalars = {k: float(v.detach()) for k, v in losses.items()}
                scalars |= {f"lr/{g['name']}": g["lr"] for g in opt.param_groups}
                scalars["keep_ratio"] = keep
                logger.log(global_step, st.name, scalars)
                bar.set_postfix(loss=f"{scalars['total']:.3f}")
            if step % cfg.ckpt_every == 0 or step == st.steps:
                if rank == 0:
                    state = {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "sampler": sampler.state_dict(),
                        "rng": _rng_state(),
                        "stage": si,
                        "step": step,
                        "global_step": global_step,
                        "world": world,
                        "config": cfg.to_dict(),
                    }
                    _atomic_torch_save(state, out / CHECKPOINT)
                if world > 1:
                    dist.barrier()
        bar.close()
    if world > 1:  # BatchNorm running stats are per rank between DDP's broadcasts: take rank 0's, as DDP does
        for b in model.buffers():
            dist.broadcast(b, 0)
    student = out / STUDENT
    if rank == 0:
        export_student(model, student, {"global_step": str(global_step)})
        logger.close()
    (out / f"rank{rank}.sha256").write_text(state_digest(model) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return student
