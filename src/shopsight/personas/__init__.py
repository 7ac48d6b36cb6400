"""shopsight.personas"""
