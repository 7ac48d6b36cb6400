"""shopsight.prediction"""
