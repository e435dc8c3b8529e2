"""PDF adapters (fpdf2) behind the domain's renderer ports."""
