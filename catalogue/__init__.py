"""Raw product photos -> house-style catalogue images -> the shop's backend."""
