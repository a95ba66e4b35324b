"""The paper's mnist experiment (its settings: multirobust.paper.experiment.paper_settings).

python recipes/mnist.py --method msd --adaptive l2
torchrun --nproc_per_node=2 recipes/mnist.py --method max --adaptive l1
"""

from paper import main

if __name__ == "__main__":
    main("mnist")
