"""A router that learns from outcome rows which model each prompt needs, applied locally.

:class:`LearnedRouter` (``model.py``) predicts each model's score from the prompt's words
and structure (``features.py``); ``train.py`` fits it (numpy, the ``eval`` extra);
``evaluate.py`` measures it over many random splits. Plug it in with
``Router(catalog, policy, scorer=router)`` or ``RoutedChatModel(learned_router="router.json")``.
"""

from routedllm.learning.model import LearnedRouter

__all__ = ["LearnedRouter"]
