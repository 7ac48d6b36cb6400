"""shopsight.explain"""
