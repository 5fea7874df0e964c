"""Regions of a frontal chest radiograph: anatomy (lung fields, midline), named-region boxes and zoom crops."""
