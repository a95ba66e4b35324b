"""The paper's cifar100 experiment (its settings: multirobust.paper.experiment.paper_settings).

python recipes/cifar100.py --method msd --adaptive l2
torchrun --nproc_per_node=2 recipes/cifar100.py --method max --adaptive l1
"""

from paper import main

if __name__ == "__main__":
    main("cifar100")
