"""The rooms of winnow's stages (see the README's "Where things live"): each room's stage.py holds its Prefect @tasks; the rest is plain Python."""
