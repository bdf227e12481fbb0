"""The rooms of winnow's stages, on shared ground floors.

Each room's stage.py holds its Prefect @tasks; the rest is plain Python (see the README's
"Where things live").
"""
