"""claimbench: does a paper's claim about transformer training hold on your hardware?"""

__version__ = "0.1.0"
