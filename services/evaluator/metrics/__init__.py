"""Pure metric functions (numpy / scikit-learn / scipy only): each scores candidate outputs against the teacher's."""
