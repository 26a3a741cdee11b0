"""``python -m circuitgate.organism``: regenerate the committed organism prompt set from the recipe's world.

(Building the organism itself is ``circuitgate organism build`` or ``circuitgate.organism.builder``.)
"""

from circuitgate.organism.world import write_prompt_set

write_prompt_set()
