"""Hydra entry point: ``python train.py experiment=omr_i2a_m2a data.root=/data/shards``."""

import hydra
from omegaconf import DictConfig

from umt.training.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    from umt.training.train import train

    train(cfg)


if __name__ == "__main__":
    main()
