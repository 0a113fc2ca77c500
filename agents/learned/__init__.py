"""Learned dispatch policies: the network (``model``), its ``Policy`` adapter (``policy``) and training.

Import from the submodules (``from agents.learned.policy import LearnedPolicy``); this package imports
nothing itself, so ``lastmile`` builds its parser without loading torch.
"""
