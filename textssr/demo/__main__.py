"""`python -m textssr.demo`: the whole of TextSSR on the embedded tiny corpus."""
from textssr.demo import main

main()
