"""The catalogue: styles.csv and images read and validated, the deterministic splits, the domain rules (outfit slots,
compatible genders and seasons, style triplets) and the ledgers kept beside it (merchandisers' marks, label fixes,
duplicate verdicts) that every build reads."""
