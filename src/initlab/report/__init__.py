"""What people look at: Rich tables for the terminal, PNG plots and self-contained HTML."""
