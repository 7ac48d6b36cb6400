"""shopsight.privacy"""
