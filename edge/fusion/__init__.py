"""Stage 5, fusion: card swipes onto visits, and one store-wide visit across cameras."""
