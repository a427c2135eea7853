"""What each task (steering, classification, detection) means: its relation, defaults, labels and drawing."""
