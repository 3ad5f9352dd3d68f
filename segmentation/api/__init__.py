"""Partner API for jobs: submissions, progress, output and manifest for lease holders, and the
work API through which providers' partner agents claim and process work items."""
