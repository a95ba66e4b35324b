"""The paper's mnist experiment (settings: multirobust.experiment.paper_settings). See `--help`.

python recipes/mnist.py --method msd --adaptive l2
torchrun --nproc_per_node=2 recipes/mnist.py --method max --adaptive l1
"""

from paper import main

if __name__ == "__main__":
    main("mnist")
