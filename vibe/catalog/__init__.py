"""The catalogue: styles.csv and images read and validated, the deterministic splits, the domain rules (outfit slots,
compatible genders and seasons, style triplets) and the merchandisers' marks kept beside it."""
