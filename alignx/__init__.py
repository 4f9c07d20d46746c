"""alignx: user-level personalized alignment of LLMs (AlignX / AlignXpert), as a library and an app.

The light modules (`preferences`, `schema`, `prompts`) import no torch and load fast; the
`backbone` module holds the model. See README.md for the data flow and the commands.
"""

__version__ = "0.1.0"
